"""The API's routes, one module per resource; each module's `routes(...)` builds its
`APIRouter` from what the app factory (ingest/api/app.py) hands it."""
