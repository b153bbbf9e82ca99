from libvirt_drs.cli import main

main()
