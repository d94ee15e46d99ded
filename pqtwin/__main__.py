from pqtwin.cli import main

main()
