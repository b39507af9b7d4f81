from nestgraph.cli import main

main()
