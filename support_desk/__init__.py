"""Support desk: escalations from the bot, the agents' console, incidents and stats."""
