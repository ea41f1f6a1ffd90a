"""Services the gateway runs or names: Docker containers (`docker`, the only importer of
python_on_whales), their host ports (`ports`, pure rules)."""
