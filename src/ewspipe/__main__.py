from ewspipe.cli.main import entry

entry()
