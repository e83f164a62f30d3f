"""The catalogue's typed errors, in the eventindex hierarchy."""

from __future__ import annotations

from eventindex.errors import ConfigError, EventIndexError


class QueryError(ConfigError):
    """The question cannot be asked as given: unknown dataset, malformed event list, bit out of range."""


class EngineError(EventIndexError):
    """The query engine is missing (DuckDB, pyspark, Java) or failed to run the query."""


class CatalogIndexError(EventIndexError):
    """The catalogue's index cannot be read or written, or belongs to another warehouse."""
