"""The web console at ``/console``: server-rendered pages (Jinja2) over the admin API's own
functions, with htmx for actions and live parts (docs/console.md, docs/adr/0007-console.md).

Pages call the same functions the ``/api/v1`` routes are (or call), so role checks, validation
messages and audit entries are the API's. :func:`app.console.router.install_console` mounts it.
"""
