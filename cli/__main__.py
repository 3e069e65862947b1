from autoprune_cli.main import main

main()
