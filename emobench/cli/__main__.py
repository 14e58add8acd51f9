from emobench.cli.app import main

main()
