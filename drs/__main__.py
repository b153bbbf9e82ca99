from drs.cli import main

main()
