//! Pairwise win-probability matrices (one K x K matrix of P(a beats b) per prompt).
