from aisd.app.cli import main

main()
