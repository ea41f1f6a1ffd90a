"""The admin REST API (quart-trio on hypercorn[trio]): one blueprint per resource."""
