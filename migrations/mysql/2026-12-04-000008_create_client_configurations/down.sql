DROP TABLE client_configurations;
