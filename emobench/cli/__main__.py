from emobench.cli.app import run

run()
