"""Task plugins: data sets with their network, drafts, refiner and metrics."""
