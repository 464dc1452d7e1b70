"""flashstock's domain core: Redis keys, Lua scripts, the reservation lifecycle, errors."""

from inventory.config import Settings
from inventory.engine import Inventory
from inventory.errors import InventoryError

__all__ = ["Inventory", "InventoryError", "Settings"]
