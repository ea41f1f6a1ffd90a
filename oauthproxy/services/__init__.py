"""Services the gateway runs or names: Docker containers (`docker`, the only importer of
python_on_whales), their host ports (`ports`, pure rules), the follower of the engine's events
(`events`) and of a container's output (`logs`)."""
