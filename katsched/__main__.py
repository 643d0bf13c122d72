from katsched.cli import main

main()
