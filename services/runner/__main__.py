from services.runner.server import main_from_environment

main_from_environment()
