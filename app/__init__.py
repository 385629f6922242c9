"""crmsync: keeps a CRM (Salesforce or HubSpot) and a customer-success database in step."""

__version__ = "0.1.0"
