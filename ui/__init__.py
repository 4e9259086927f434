"""The page and the API that app.py serves, in small pieces: formatting
(format.py), the API's edge (edge.py: uploads and refusals), the tabs and the
events of the page, and the named API endpoints. Everything they show comes
from retrieval.search's Service as render-ready answers."""
