from tunnelmesh.cli.main import main

main()
