from edge_core.cli.main import main

main()
