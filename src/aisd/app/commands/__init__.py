"""CLI sub-apps, one per system; see aisd.app.cli."""
