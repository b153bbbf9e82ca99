"""The REST API (/api/v1, OpenAPI at /api/v1/openapi.json) and the web console, served by
`drs serve` (web.server). Both are thin adapters over libvirt_drs.operations: every
request is authenticated (web.auth), every action authorised and audited by the
operation it calls."""
