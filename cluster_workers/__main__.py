from cluster_workers.cli import main

main()
