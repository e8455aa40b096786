"""Re-ranking on the candidates the store returns: attribute boosts, relaxation, MMR."""
