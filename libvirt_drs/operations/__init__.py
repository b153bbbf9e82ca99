"""The operations layer: every action an operator can take, and every view of the cluster
an operator reads, as one function each.

An action validates its input, authorises the caller (caller.require), writes an audit
event naming the caller, and executes. The CLI (libvirt_drs/cli) and the REST API and web
console (libvirt_drs/web) are thin adapters over these functions: none of them talks to
the database or libvirt on its own, and no operation is implemented twice.

Long actions come in two steps so that a synchronous caller (the CLI, with progress bars)
and an asynchronous one (the API, which answers 202 with job ids) share them: a `request_*`
function validates, authorises, audits and queues migration jobs; `run_jobs` carries them
out under the shared limits.
"""
