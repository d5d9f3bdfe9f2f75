"""The composition root: settings, wiring, the HTTP server and the CLI. Only this package imports FastAPI/Typer."""
