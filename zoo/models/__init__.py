"""The four autoencoder families."""
