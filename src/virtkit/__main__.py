from virtkit.cli.main import main

main()
