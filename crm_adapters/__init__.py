"""CRM adapters: one module per CRM, registered in the ``crm_bridge.adapters`` entry-point group."""
