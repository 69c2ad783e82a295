from services.gateway.server import main_from_environment

main_from_environment()
