from services.placement.server import main_from_environment

main_from_environment()
