"""One module per `dfablate` subcommand: `add_parser(subparsers)` and a handler set as default."""
