"""2-D point clouds: the toy tasks, Gaussian-mixture drafts, the nearest-neighbour refiner
(also used by images) and the point-cloud metrics (SWD, MMD, energy, k-NN precision/recall)."""
