from bienc_cli.cli import main

main()
