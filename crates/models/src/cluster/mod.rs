//! Clustering: k-means and k-prototypes.
