//! Image bytes (PNG, JPEG, WebP): content hashes and perceptual hashes for dedup.
