"""The guide's snippets as written, each run through the plugin and caught for the right reason."""
