"""One module per noun; each exposes ``router`` (an ``APIRouter``), listed in ``ROUTERS``."""
