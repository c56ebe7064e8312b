"""podrec serve: the online recommendation API (model from the lake, live state in Redis, events from Kafka)."""
