"""Running one submission in one container: the Sandbox protocol and its implementations."""
