"""One APIRouter per system; see aisd.app.server for the hooks a module may define."""
