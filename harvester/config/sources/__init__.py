"""Where raw config data comes from: the TOML file, the environment, `${secret:NAME}`."""
