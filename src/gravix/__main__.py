from gravix.cli import main

main()
