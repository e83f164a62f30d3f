"""`ei-catalog`: asking the warehouse questions (event picking, trigger counts and overlaps, dataset
overlaps, duplicates) over its committed data only, on DuckDB (embedded) or Spark."""
