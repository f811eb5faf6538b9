"""Services: the dl_service FastAPI application and the container images of the stack."""
