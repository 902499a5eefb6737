"""``python -m support_desk`` starts the desk."""

from support_desk.app import main

main()
