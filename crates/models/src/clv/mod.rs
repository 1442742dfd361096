//! Customer lifetime value: BG/NBD purchase model and Gamma-Gamma spend model.
