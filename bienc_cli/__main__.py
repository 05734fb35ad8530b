from bienc_cli.cli.main import main

main()
