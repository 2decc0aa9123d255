"""The operator console: server-rendered pages (Jinja2) kept live by HTMX polling of the same
template blocks."""
