"""The routes, one module per resource; each class registers its endpoints on a router."""
